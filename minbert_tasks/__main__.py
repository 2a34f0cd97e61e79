import sys

from minbert_tasks.cli import main

sys.exit(main())
