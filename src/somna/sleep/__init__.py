"""Sleep-time: consolidation cycles over a store (see cycle.py), deterministic passes (passes.py)."""
