import sys

from medgan_ui.cli import main

sys.exit(main())
