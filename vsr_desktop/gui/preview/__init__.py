"""Before/after preview: comparison view, timeline, background region renderer."""
