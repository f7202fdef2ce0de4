import sys

from testbed.mu.process import main

sys.exit(main())
