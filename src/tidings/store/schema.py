"""The one schema both stores use, as numbered migrations.

Types are chosen to mean the same in SQLite and PostgreSQL: TEXT, BIGINT, INTEGER and
DOUBLE PRECISION (Unix seconds). JSON columns are TEXT, written and read by msgspec.
A store applies, in one transaction, every migration above the version it finds in
``tidings_schema``; migrations are append-only.
"""

from __future__ import annotations

from typing import Final


class PostgresOnly(str):
    """A migration statement PostgreSQL runs and SQLite skips: a storage setting SQLite
    has no counterpart of."""


MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            """CREATE TABLE notifications (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                type TEXT NOT NULL,
                title TEXT,
                message TEXT,
                priority TEXT NOT NULL,
                category TEXT,
                data TEXT,
                actions TEXT,
                expires_at DOUBLE PRECISION,
                created_at DOUBLE PRECISION NOT NULL,
                delivered_at DOUBLE PRECISION,
                acked_at DOUBLE PRECISION,
                read_at DOUBLE PRECISION,
                archived_at DOUBLE PRECISION,
                attempts INTEGER NOT NULL DEFAULT 0,
                UNIQUE (user_id, seq)
            )""",
            "CREATE INDEX notifications_created_at ON notifications (created_at)",
            """CREATE TABLE inbox_users (
                user_id TEXT PRIMARY KEY,
                last_seq BIGINT NOT NULL DEFAULT 0,
                seen_at DOUBLE PRECISION
            )""",
            """CREATE TABLE user_roles (
                user_id TEXT NOT NULL,
                role TEXT NOT NULL,
                PRIMARY KEY (user_id, role)
            )""",
            "CREATE INDEX user_roles_role ON user_roles (role)",
            """CREATE TABLE idempotency (
                key TEXT PRIMARY KEY,
                fingerprint TEXT NOT NULL,
                ids TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX idempotency_created_at ON idempotency (created_at)",
        ),
    ),
    (
        2,
        (
            # Outbound webhook for notifications nobody acknowledged in time.
            "ALTER TABLE notifications ADD COLUMN webhook_state TEXT",
            "ALTER TABLE notifications ADD COLUMN webhook_attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE notifications ADD COLUMN webhook_next_at DOUBLE PRECISION",
            # In-app delivery on or off, per user and category ('*': every category).
            """CREATE TABLE preferences (
                user_id TEXT NOT NULL,
                category TEXT NOT NULL,
                in_app INTEGER NOT NULL,
                PRIMARY KEY (user_id, category)
            )""",
        ),
    ),
    (
        3,
        (
            # Chat rooms (issue 6): rooms, their members, messages, blocks.
            """CREATE TABLE rooms (
                id TEXT PRIMARY KEY,
                name TEXT,
                ws_post INTEGER NOT NULL DEFAULT 1,
                last_seq BIGINT NOT NULL DEFAULT 0,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE room_members (
                room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
                user_id TEXT NOT NULL,
                role TEXT NOT NULL,
                joined_at DOUBLE PRECISION NOT NULL,
                last_read_seq BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (room_id, user_id)
            )""",
            "CREATE INDEX room_members_user ON room_members (user_id)",
            """CREATE TABLE room_messages (
                id TEXT PRIMARY KEY,
                room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                author_id TEXT NOT NULL,
                body TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                edited_at DOUBLE PRECISION,
                deleted_at DOUBLE PRECISION,
                deleted_by TEXT,
                UNIQUE (room_id, seq)
            )""",
            """CREATE TABLE user_blocks (
                user_id TEXT NOT NULL,
                blocked_id TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (user_id, blocked_id)
            )""",
        ),
    ),
    (
        4,
        (
            # The user directory (docs/users.md): who the backend says its users are.
            # NOT NULL spelled out: SQLite lets a TEXT primary key be NULL.
            """CREATE TABLE directory_users (
                user_id TEXT PRIMARY KEY NOT NULL,
                name TEXT,
                avatar_url TEXT,
                email TEXT,
                phone TEXT,
                locale TEXT,
                time_zone TEXT,
                data TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE directory_roles (
                user_id TEXT NOT NULL,
                role TEXT NOT NULL,
                PRIMARY KEY (user_id, role)
            )""",
            "CREATE INDEX directory_roles_role ON directory_roles (role)",
        ),
    ),
    (
        5,
        (
            # Delivery beyond the app (issue 17): quiet hours, Web Push subscriptions,
            # per-channel switches, and each notification's planned deliveries with a log.
            """CREATE TABLE quiet_hours (
                user_id TEXT PRIMARY KEY NOT NULL,
                start_at TEXT NOT NULL,
                end_at TEXT NOT NULL
            )""",
            """CREATE TABLE push_subscriptions (
                endpoint TEXT PRIMARY KEY NOT NULL,
                user_id TEXT NOT NULL,
                p256dh TEXT NOT NULL,
                auth TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id)",
            """CREATE TABLE channel_preferences (
                user_id TEXT NOT NULL,
                channel TEXT NOT NULL,
                category TEXT NOT NULL,
                enabled INTEGER NOT NULL,
                PRIMARY KEY (user_id, channel, category)
            )""",
            """CREATE TABLE deliveries (
                notification_id TEXT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
                channel TEXT NOT NULL,
                user_id TEXT NOT NULL,
                unless TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                due_at DOUBLE PRECISION NOT NULL,
                events INTEGER NOT NULL,
                queued_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (notification_id, channel)
            )""",
            "CREATE INDEX deliveries_due ON deliveries (due_at) WHERE state = 'pending'",
            """CREATE TABLE delivery_log (
                notification_id TEXT NOT NULL,
                channel TEXT NOT NULL,
                n INTEGER NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                event TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                reason TEXT,
                next_at DOUBLE PRECISION,
                PRIMARY KEY (notification_id, channel, n),
                FOREIGN KEY (notification_id, channel)
                    REFERENCES deliveries (notification_id, channel) ON DELETE CASCADE
            )""",
        ),
    ),
    (
        6,
        (
            # 0: the user switched in-app off for the category, but other channels were
            # planned ("email only"): kept for escalation and its log, never live.
            "ALTER TABLE notifications ADD COLUMN in_app INTEGER NOT NULL DEFAULT 1",
        ),
    ),
    (
        7,
        (
            # Room on each page for the update every row gets soon after its insert (its
            # delivery mark): at 100 % it found none, 92 % of those updates were not HOT
            # and wrote a new version of the row into every index of the table. Pages
            # written before this keep their old setting.
            PostgresOnly("ALTER TABLE notifications SET (fillfactor = 80)"),
        ),
    ),
)

LATEST: Final = MIGRATIONS[-1][0]

COLUMNS: Final = (
    "id, user_id, seq, type, title, message, priority, category, data, actions, expires_at, "
    "created_at, delivered_at, acked_at, read_at, archived_at, attempts, in_app"
)
