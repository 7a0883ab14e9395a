"""``python -m factvae.cli``: the ``factvae`` command run as a module, which is how ``--nproc``
starts each process under torchrun."""

import sys

from factvae.cli import main

if __name__ == "__main__":
    sys.exit(main())
