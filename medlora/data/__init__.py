"""Sources → records → splits: everything that turns raw medical text into training JSONL."""
