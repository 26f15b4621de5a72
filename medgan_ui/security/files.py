"""Owner-only files: the workspace holds patient images, every reader's answers and the study truth.

`restrict_new_files` sets the process umask to 0o077, so everything this process writes afterwards
(databases, uploads Gradio stores, runs, exports, temp files) is created rw------- / rwx------,
whichever module writes it. `make_private_dir` tightens a folder the app owns that was created
earlier with looser bits (an old workspace), which also closes every file inside to other users.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077


def restrict_new_files() -> None:
    """Create every later file and folder of this process without group/other permissions."""
    os.umask(PRIVATE_UMASK)


def make_private_dir(folder: Path) -> None:
    """chmod 0o700 a folder we own that others can enter; silently leaves folders of other users."""
    try:
        st = folder.stat()
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(folder, 0o700)
    except (OSError, AttributeError):  # AttributeError: no getuid (Windows), where modes do not apply
        pass
