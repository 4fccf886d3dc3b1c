"""Planning the missing jobs, packing them, running packs in-process or on Celery workers."""
