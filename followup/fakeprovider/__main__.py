"""`python -m followup.fakeprovider --port 8025`."""

from followup.fakeprovider.cli import main

raise SystemExit(main())
