"""ComfyUI's users.json, made ready before ComfyUI starts with `--multi-user`.

With --multi-user ComfyUI knows only the users listed in `<user dir>/users.json`, read at
its start (app/user_manager.py), and answers a request for any other with a 500. The gate
sends COMFY_ADMIN_USER's requests as ComfyUI's `default` user, whose folder holds an
installation's existing workflows and settings; `POST /users` cannot make that id (it
appends a uuid), so it is put in the file here. The other accounts' users are made by the
gate through `POST /users` on their first request (auth_proxy/comfy_users.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from comfy_stack.files import write_json

log = logging.getLogger(__name__)
DEFAULT_USER = "default"
FILE = "users.json"


def ensure_default_user(user_dir: Path) -> None:
    path = user_dir / FILE
    users: object = {}
    if path.is_file():
        try:
            users = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            users = None
        if not isinstance(users, dict):
            # ComfyUI would fail to start on it; the users' folders stay, the gate makes new ids
            log.warning("%s is not a JSON object of users: written anew with the default user", path)
            users = {}
    assert isinstance(users, dict)
    if DEFAULT_USER not in users:
        users[DEFAULT_USER] = DEFAULT_USER
        write_json(path, users, sort_keys=False, mode=0o644)
