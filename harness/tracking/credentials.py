"""Credentials in store addresses: userinfo never reaches MLflow, Optuna or a command line.

A tracking URI or a study storage may carry them (``http://alice:pw@host:5000``,
``postgresql://u:pw@host/db``).  Only connecting needs them, and everything else would show
them: MLflow prints the URI it was given (``View run … at: http://alice:pw@…``) and puts it in
its errors; a worker's command line is visible to every user of the machine (``ps``); a
traceback holds whatever its messages held.  So:

- MLflow gets an HTTP(S) URI without its user information; the user and password reach it as
  ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, which its REST client reads
  (``for_mlflow``).
- Optuna (SQLAlchemy) gets a database URL without the password; the driver gets it as a
  connect argument (``for_database``).
- A worker process gets the URIs on its command line without passwords, and the passwords in
  its environment (``off_argv``), from which it puts them back (``from_environment``).
- Each password is remembered as it is used, so that ``harness.uris.redact`` masks it in
  whatever this process prints or records.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit, urlunsplit

from harness.uris import password_of, remember_password

# The option of a worker's command line whose value is a store address, and the environment
# variable that carries its password instead.
PASSWORD_VARIABLES = {"--tracking-uri": "HARNESS_TRACKING_PASSWORD",
                      "--storage": "HARNESS_STORAGE_PASSWORD"}


def without_userinfo(uri: str) -> str:
    """``uri`` with no user or password: the address as MLflow shows it."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def without_password(uri: str) -> str:
    """``uri`` with its user kept and its password removed."""
    if password_of(uri) is None:
        return uri
    parts = urlsplit(uri)
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}@{host}"))


def for_mlflow(uri: str) -> str:
    """The tracking URI to hand MLflow: an HTTP(S) one without user information, its
    credentials set as MLflow's own environment variables for this process (the URI given
    wins over credentials already there).  Database URIs go as they are: MLflow's SQLAlchemy
    store needs the password in them and never prints them."""
    if not uri.startswith(("http://", "https://")) or "@" not in urlsplit(uri).netloc:
        return uri
    remember_password(uri)
    parts = urlsplit(uri)
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    if password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return without_userinfo(uri)


def for_database(url: str) -> tuple[str, dict[str, str]]:
    """A database URL for SQLAlchemy without its password, and the connect arguments that
    carry it to the driver (psycopg takes ``password``)."""
    password = password_of(url)
    if password is None:
        return url, {}
    remember_password(url)
    return without_password(url), {"password": unquote(password)}


def off_argv(cmd: list[str]) -> tuple[list[str], dict[str, str]]:
    """A worker's command line with the password taken out of every store address on it, and
    the environment variables that carry those passwords to it instead."""
    out, env = list(cmd), {}
    for i, arg in enumerate(out[:-1]):
        variable = PASSWORD_VARIABLES.get(arg)
        password = password_of(out[i + 1]) if variable else None
        if password is not None:
            remember_password(out[i + 1])
            out[i + 1] = without_password(out[i + 1])
            env[variable] = password
    return out, env


def from_environment(uri: str | None, option: str) -> str | None:
    """In a worker: ``uri`` (the value of ``option`` on its command line) with the password its
    parent put in the environment (``off_argv``) back in its place."""
    password = os.environ.get(PASSWORD_VARIABLES[option])
    if uri is None or not password or password_of(uri) is not None:
        return uri
    parts = urlsplit(uri)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return uri
    full = urlunsplit(parts._replace(netloc=f"{userinfo}:{password}@{host}"))
    remember_password(full)
    return full
