"""Self-fencing: the facts that keep a node from serving, written into ``l2-fence``."""
