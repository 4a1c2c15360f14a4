"""Apps for the lifecycle tests, importable by `projectionist` subprocesses as module:attribute.

`notes_app` is the notes app of tests/notes.py with no poisoned text: the "fixed code" that a
CLI process runs after a test parked events with a poisoned copy. `Mailer` adds a projection
with a live-only side effect to a notes app.
"""

from __future__ import annotations

import sqlalchemy as sa

from projectionist import ApplyContext, Projection
from tests.notes import NoteAdded, Notes

notes_app = Notes().app


class Mailer:
    """A projection that counts notes in a table and "sends a mail" (a live-only handler)."""

    def __init__(self, notes: Notes) -> None:
        self.sent: list[str] = []
        self.projection = Projection("mailer")
        self.seen = self.projection.table(
            "mailer_seen",
            sa.Column("position", sa.BigInteger, primary_key=True),
            sa.Column("text", sa.String(200), nullable=False),
        )
        seen, sent = self.seen, self.sent

        @self.projection.on(NoteAdded)
        def record(event: NoteAdded, ctx: ApplyContext) -> None:
            ctx.connection.execute(sa.insert(ctx[seen]).values(position=ctx.position,
                                                               text=event.text))

        mail = Projection("mailer_mail")

        @mail.on(NoteAdded, live_only=True)
        def send(event: NoteAdded, ctx: ApplyContext) -> None:
            sent.append(event.text)

        self.mail = mail
        notes.app.projection(self.projection)
        notes.app.projection(mail)
