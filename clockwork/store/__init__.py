"""Where results and jobs are kept (the SQLAlchemy catalog) and sent (postbacks)."""
