import sys

from zernike3d.cli import main

sys.exit(main())
