"""The web application: leaderboards, the error matrix, submission pages, organizer actions
and the REST API (FastAPI, with Jinja2 templates and static files from the repository's web/)."""
