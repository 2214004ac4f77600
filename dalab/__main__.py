import os
import sys

from dalab.cli import main

COMMAND = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
WORLD = os.environ.get("WORLD_SIZE", "")
if WORLD.isdigit() and int(WORLD) > 1 and COMMAND not in (None, "train"):
    # torchrun would start the command once per process, each writing the same output
    print(f"dalab {COMMAND}: error: under torchrun (WORLD_SIZE={WORLD}) "
          "only `dalab train` runs, as one run data-parallel; run this command without "
          "torchrun (sweeps start their own processes)", file=sys.stderr)
    raise SystemExit(2)
raise SystemExit(main())
