from riskflow.cli import main

raise SystemExit(main())
