"""``python -m spec.report``: the cross-backend report (see :mod:`spec.report.compare`)."""

from spec.report.compare import main

raise SystemExit(main())
