import sys

from echolatent.cli import main

sys.exit(main())
