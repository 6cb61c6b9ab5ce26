"""Compact, stable addresses for native call-stack addresses.

A PPX front end in C++ builds each base address from the native call stack: a large simulator's
(an event generator such as Sherpa or Pythia) are hundreds of characters long and there are
thousands of distinct ones. Carried verbatim through
every trace, posterior, dataset and network they cost memory and are unreadable. An
:class:`AddressDictionary` maps each distinct base address to a compact one,
``a{id}:{alias}`` (``a17:Rambo::GenerateWeight``), where ``id`` is a small integer assigned in
order of first appearance and ``alias`` names the innermost frame that is not part of the PPX
front end. The long form stays recoverable from the dictionary.

Stability
---------
Ids must mean the same thing in every process that touches one run's data: the workers that
generate a dataset, the process that trains a network, and the fresh simulator processes that
later run inference with it. So the dictionary lives in a file (JSON lines: a header, then one
entry per line, in id order) and is append-only: loading it and meeting the same strings gives
the same ids; new strings get the next ids. Several processes may share one file: a new string
is assigned under an exclusive lock on ``<file>.lock``, after reading whatever other processes
appended meanwhile, so concurrent workers agree on every id. An entry is one ``write`` of one
line; a line cut short by a killed writer (no newline) is ignored and overwritten.

Memory
------
The dictionary grows only with distinct base addresses, never per trace: the compact string
handed to the controller is the one stored object for that address (interned), so traces share
it instead of holding copies.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

try:  # POSIX file locks; without them the dictionary is still correct for one process
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["AddressDictionary", "CompactingController", "make_alias", "function_name",
           "split_frames", "FRONT_END_PREFIXES"]

FORMAT = "etalumis-address-dictionary"
FORMAT_VERSION = 1

#: Frames of the PPX front end and of the C/C++ runtime: never the interesting one.
FRONT_END_PREFIXES = ("ppx::", "pyprob_cpp::", "pyprob::", "cpprob::", "std::", "__gnu_cxx::",
                      "__libc", "_start", "??")

_OFFSET = re.compile(r"\s*\+\s*0x[0-9a-fA-F]+\s*$")
_TEMPLATE = re.compile(r"<[^<>]*>")
_UNSAFE = re.compile(r"[^A-Za-z0-9_:~]+")
_COMPACT = re.compile(r"^a(\d+)(?::|$)")


def split_frames(address: str) -> list[str]:
    """The frames of a call-stack address ``[f1; f2; ...]`` (``;``-separated, brackets
    optional), as sent; a string without ``;`` is one frame."""
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [f.strip() for f in text.split(";") if f.strip()]


def function_name(frame: str) -> str:
    """``PHASIC::Rambo::GenerateWeight(ATOOLS::Vec4<double>*)+0x1a3`` ->
    ``PHASIC::Rambo::GenerateWeight``: no offset, arguments, template arguments or qualifiers."""
    name = _OFFSET.sub("", frame)
    # Template arguments may nest and contain parentheses: strip them innermost first.
    while True:
        stripped = _TEMPLATE.sub("", name)
        if stripped == name:
            break
        name = stripped
    paren = name.find("(")
    if paren > 0:
        name = name[:paren]
    # "void ns::f" (a return type printed by some demanglers) -> "ns::f"
    return name.strip().split(" ")[-1] if name.strip() else name.strip()


def make_alias(address: str, innermost_first: bool = True,
               skip_prefixes: Sequence[str] = FRONT_END_PREFIXES, parts: int = 2,
               max_length: int = 48) -> str:
    """A short readable name for a base address: the last ``parts`` components of the innermost
    frame that is not in the front end (``Rambo::GenerateWeight``)."""
    frames = split_frames(address)
    if not innermost_first:
        frames.reverse()
    chosen = None
    for frame in frames:
        name = function_name(frame)
        if name and not name.startswith(tuple(skip_prefixes)):
            chosen = name
            break
    if chosen is None:
        chosen = function_name(frames[0]) if frames else ""
    components = [c for c in chosen.split("::") if c]
    alias = "::".join(components[-parts:]) if components else ""
    # Aliases become part of addresses, posterior keys and file names: keep them plain.
    # "__" is the controller's separator before the distribution name.
    alias = _UNSAFE.sub("_", alias)
    while "__" in alias:
        alias = alias.replace("__", "_")
    return alias.strip("_:")[:max_length] or "site"


class AddressDictionary:
    """Long base addresses <-> compact ids ``a{id}:{alias}`` (see the module docstring).

    Parameters
    ----------
    path:
        The dictionary file (JSON lines). Loaded if it exists; every new address is appended
        to it at once (atomically per entry, under a lock shared with other processes). Without
        a path the dictionary lives in memory; :meth:`save` writes it.
    innermost_first:
        Frame order of the addresses (``backtrace()`` order, the default) for the aliases.
    skip_prefixes, alias_parts:
        Which frames the alias skips, and how many ``::`` components it keeps.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, innermost_first: bool = True,
                 skip_prefixes: Sequence[str] = FRONT_END_PREFIXES, alias_parts: int = 2) -> None:
        self.path = Path(path) if path is not None else None
        self.innermost_first = bool(innermost_first)
        self.skip_prefixes = tuple(skip_prefixes)
        self.alias_parts = int(alias_parts)
        self._compact: dict[str, str] = {}   # long -> compact (the hot path)
        self._long: list[str] = []           # id -> long
        self._short: list[str] = []          # id -> compact
        self._offset = 0                     # bytes of the file already read
        if self.path is not None and self.path.exists():
            with self._locked():
                self._read_new_entries()

    # -- lookups -------------------------------------------------------------------------------
    def compact(self, address: str) -> str:
        """The compact address of a long one, assigning the next id to a new one."""
        short = self._compact.get(address)
        if short is None:
            short = self._add(address)
        return short

    __call__ = compact

    def id_of(self, address: str) -> int:
        """The id of a long address (assigned if new)."""
        return self.parse_id(self.compact(address))

    def long(self, key: str | int) -> str:
        """The long base address of an id, or of a compact (trace) address such as
        ``a17:Rambo::GenerateWeight`` or ``a17:Rambo::GenerateWeight__Uniform__2``."""
        i = key if isinstance(key, int) else self.parse_id(key)
        if not 0 <= i < len(self._long):
            raise KeyError(f"address id {i} is not in the dictionary ({len(self._long)} entries"
                           f"{', file ' + str(self.path) if self.path else ''})")
        return self._long[i]

    def expand(self, address: str) -> str:
        """A trace address with its compact base replaced by the long one (the suffix
        ``__{distribution}__{instance}`` the controller appended is kept)."""
        base, sep, suffix = address.partition("__")
        return self.long(base) + sep + suffix

    def alias(self, key: str | int) -> str:
        i = key if isinstance(key, int) else self.parse_id(key)
        return self._short[i].partition(":")[2]

    @staticmethod
    def parse_id(compact: str) -> int:
        m = _COMPACT.match(compact)
        if m is None:
            raise KeyError(f"{compact!r} is not a compact address (a<id>:<alias>)")
        return int(m.group(1))

    def __len__(self) -> int:
        return len(self._long)

    def __contains__(self, address: object) -> bool:
        return address in self._compact

    def __iter__(self) -> Iterator[tuple[int, str, str]]:
        """``(id, compact, long)`` in id order."""
        return iter(zip(range(len(self._long)), list(self._short), list(self._long)))

    def entries(self) -> list[tuple[int, str, str]]:
        return list(self)

    def as_mapping(self) -> dict[str, str]:
        """compact -> long."""
        return dict(zip(self._short, self._long))

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"AddressDictionary({len(self)} addresses{where})"

    # -- growth ----------------------------------------------------------------------------------
    def _make_compact(self, i: int, address: str) -> str:
        alias = make_alias(address, self.innermost_first, self.skip_prefixes, self.alias_parts)
        return sys.intern(f"a{i}:{alias}")

    def _insert(self, i: int, address: str, compact: str | None = None) -> str:
        if i != len(self._long):
            raise ValueError(f"address dictionary entry {i} out of order (have {len(self._long)})")
        address = sys.intern(address)
        short = compact if compact is not None else self._make_compact(i, address)
        short = sys.intern(short)
        self._long.append(address)
        self._short.append(short)
        self._compact[address] = short
        return short

    def _add(self, address: str) -> str:
        if not isinstance(address, str) or not address:
            raise ValueError(f"a base address must be a non-empty string, got {address!r}")
        if self.path is None:
            return self._insert(len(self._long), address)
        with self._locked():
            # Another process may have added it (and others) since we last looked.
            self._read_new_entries()
            short = self._compact.get(address)
            if short is not None:
                return short
            i = len(self._long)
            short = self._insert(i, address)
            self._append(i, short, address)
            return short

    # -- the file ------------------------------------------------------------------------------
    def _lock_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".lock")

    def _locked(self):
        return _FileLock(self._lock_path())

    @staticmethod
    def _header() -> bytes:
        return (json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION}) + "\n").encode()

    @staticmethod
    def _line(i: int, compact: str, address: str) -> bytes:
        return (json.dumps({"id": i, "compact": compact, "address": address},
                           ensure_ascii=False) + "\n").encode()

    def _append(self, i: int, compact: str, address: str) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            data = self._line(i, compact, address)
            if size == 0:
                data = self._header() + data
            elif size > self._offset:
                # A torn last line (its writer was killed): overwrite it.
                os.ftruncate(fd, self._offset)
                os.lseek(fd, self._offset, os.SEEK_SET)
            os.write(fd, data)
            os.fsync(fd)
            self._offset = os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)

    def _read_new_entries(self) -> None:
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        pos = 0
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                break  # nothing more, or a torn line
            line = data[pos:end]
            pos = end + 1
            self._offset += len(line) + 1
            if not line.strip():
                continue
            self._parse_line(line)

    def _parse_line(self, line: bytes) -> None:
        try:
            obj = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{self.path}: not an address dictionary ({error})") from None
        if "format" in obj:
            if obj.get("format") != FORMAT:
                raise ValueError(f"{self.path} is not an address dictionary (format "
                                 f"{obj.get('format')!r})")
            if int(obj.get("format_version", 0)) > FORMAT_VERSION:
                raise ValueError(f"{self.path} was written by a newer version (format version "
                                 f"{obj.get('format_version')})")
            return
        self._insert(int(obj["id"]), obj["address"], obj.get("compact"))

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the whole dictionary to ``path`` (default: its own file) atomically: under a
        temporary name, then renamed into place. Returns the path."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("AddressDictionary.save needs a path (the dictionary has none)")
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self._header() + b"".join(self._line(i, s, a) for i, s, a in self)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        with _FileLock(target.with_name(target.name + ".lock")):
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            finally:
                if tmp.exists():
                    tmp.unlink()
        if self.path is not None and target.resolve() == self.path.resolve():
            self._offset = len(data)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, **options) -> "AddressDictionary":
        """Read a dictionary file; it keeps growing into the same file."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such address dictionary")
        return cls(path, **options)

    def update(self, addresses: Iterable[str]) -> None:
        """Assign ids to several long addresses (in the given order)."""
        for a in addresses:
            self.compact(a)


class CompactingController:
    """Stands between a native simulator and the engine's controller for one trace: every base
    address goes through ``compact`` (an :class:`AddressDictionary`'s, or a function that passes
    some addresses unchanged) before the controller sees it. Keeps the value of each observe by
    name (given, or drawn by the engine), which a native simulator never sees; anything else is
    the controller's."""

    __slots__ = ("_controller", "_compact", "observed")

    def __init__(self, controller: Any, compact: Callable[[str], str]) -> None:
        self._controller = controller
        self._compact = compact
        self.observed: dict[str | None, Any] = {}

    def sample(self, base: str, distribution: Any, name: str | None, control: bool) -> Any:
        return self._controller.sample(self._compact(base), distribution, name, control)

    def observe(self, base: str, distribution: Any, value: Any, name: str | None) -> Any:
        value = self._controller.observe(self._compact(base), distribution, value, name)
        self.observed[name] = value
        return value

    def tag(self, base: str, value: Any, name: str | None) -> None:
        self._controller.tag(self._compact(base), value, name)

    def factor(self, base: str, log_weight: float, name: str | None) -> None:
        self._controller.factor(self._compact(base), log_weight, name)

    def __getattr__(self, item: str) -> Any:
        return getattr(self._controller, item)


class _FileLock:
    """An exclusive ``flock`` on a sidecar file, held for one dictionary update."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> "_FileLock":
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
