"""The weights downloader: the program of the download Job, in an image of its own (huggingface_hub, boto3)."""
