"""Workflow scripts the launcher tests start as real instance processes."""
