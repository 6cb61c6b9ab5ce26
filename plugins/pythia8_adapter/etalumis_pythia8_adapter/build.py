"""Build the native PPX front end against the Pythia library (``make pythia8`` runs this).

The core's native builder does the work (flatc bindings of the PPX schema, g++, ZeroMQ); this
adds Pythia's headers and library, found beside the executable at run time (``$ORIGIN/lib``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from etalumis_core.ppx.native import build_native_simulator


def build_front_end(source: Path, output: Path, include: Path, lib: Path) -> Path:
    rpath = "$ORIGIN/" + str(Path(lib).resolve().relative_to(Path(output).resolve()))
    flags = ("-O2", "-I", str(include), "-L", str(lib), f"-Wl,-rpath,{rpath}")
    return build_native_simulator(source, output, flags=flags, libraries=("pythia8", "zmq", "dl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--include", type=Path, required=True, help="Pythia's include directory")
    parser.add_argument("--lib", type=Path, required=True, help="where libpythia8.so is")
    args = parser.parse_args()
    print(build_front_end(args.source, args.output, args.include, args.lib))


if __name__ == "__main__":
    main()
