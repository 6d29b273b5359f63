"""The run folder: layout, lock and finding runs (folder), atomic writes, model files, history, listing."""
