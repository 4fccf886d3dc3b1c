"""Who acts: an organizer, a team, or the public.

The web tells them apart by credential (``web/auth.py``); the command line is run by
organizers, on the machine that holds the database (``ORGANIZER``). Actions
(``arena.actions``) and the web's permissions take a ``Caller`` and never ask how it was
identified.
"""

from dataclasses import dataclass

from arena.models import Submission


@dataclass(frozen=True)
class Caller:
    organizer: bool = False
    team_id: int | None = None
    team_name: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.organizer and self.team_id is None

    def owns(self, submission: Submission) -> bool:
        return self.organizer or (self.team_id is not None and submission.team_id == self.team_id)


#: Whoever runs the ``arena`` command: an organizer.
ORGANIZER = Caller(organizer=True)
