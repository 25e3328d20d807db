"""The jobs panel: a table model over the job store, a runner thread, the dock widget."""
