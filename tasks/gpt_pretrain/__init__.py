"""The gpt_pretrain task (see task.py)."""
