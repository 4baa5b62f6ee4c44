"""`python -m glusterpy.rebalance`: see glusterpy/rebalance/process.py."""

import sys

from .process import main

sys.exit(main())
