"""The Central Database: the system's state and history, in SQLite (no server to run).

Reports of users and servers, every planner decision with its inputs and
estimates, and every migration record (to which the decision's measured
outcome is linked), so estimators can be judged after the run.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS user_reports (t REAL, user TEXT, ap TEXT, x REAL, y REAL, body TEXT);
CREATE TABLE IF NOT EXISTS server_reports (t REAL, server TEXT, cpu_utilisation REAL, memory_bytes REAL, body TEXT);
CREATE TABLE IF NOT EXISTS decisions (id INTEGER PRIMARY KEY, t REAL, planner TEXT, trigger TEXT, user TEXT,
                                      inputs TEXT, actions TEXT, estimates TEXT);
CREATE TABLE IF NOT EXISTS migrations (id TEXT PRIMARY KEY, decision INTEGER, t REAL, service TEXT, source TEXT,
                                       dest TEXT, mode TEXT, ok INTEGER, record TEXT);
CREATE TABLE IF NOT EXISTS placements (t REAL, service TEXT, server TEXT, endpoint TEXT);
"""


class Database:
    def __init__(self, path: str | Path | None):
        self.connection = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        self.connection.executescript(SCHEMA)
        self.lock = threading.Lock()

    def _write(self, sql: str, values: tuple) -> int:
        with self.lock:
            cursor = self.connection.execute(sql, values)
            self.connection.commit()
            return cursor.lastrowid

    def user_report(self, report: dict) -> None:
        position = report.get("position") or (None, None)
        self._write("INSERT INTO user_reports VALUES (?, ?, ?, ?, ?, ?)",
                    (report.get("t", time.time()), report["user"], report.get("ap"), position[0], position[1],
                     json.dumps(report)))

    def server_report(self, report: dict) -> None:
        self._write("INSERT INTO server_reports VALUES (?, ?, ?, ?, ?)",
                    (report.get("time", time.time()), report["server"], report.get("cpu_utilisation"),
                     report.get("memory_bytes"), json.dumps(report)))

    def decision(self, planner: str, trigger: str, user: str | None, inputs: dict, actions: list[dict],
                 estimates: dict) -> int:
        return self._write("INSERT INTO decisions (t, planner, trigger, user, inputs, actions, estimates) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (time.time(), planner, trigger, user, json.dumps(inputs, default=str),
                            json.dumps(actions, default=str), json.dumps(estimates, default=str)))

    def migration(self, decision: int | None, record: dict) -> None:
        self._write("INSERT OR REPLACE INTO migrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record["migration"], decision, time.time(), record["service"], record["source"],
                     record["dest"], record["mode"], int(bool(record.get("ok"))), json.dumps(record, default=str)))

    def placement(self, service: str, server: str, endpoint) -> None:
        self._write("INSERT INTO placements VALUES (?, ?, ?, ?)", (time.time(), service, server, json.dumps(endpoint)))

    def rows(self, table: str) -> list[dict]:
        with self.lock:
            cursor = self.connection.execute(f"SELECT * FROM {table}")  # table names are ours
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        with self.lock:
            self.connection.close()
