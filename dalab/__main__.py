from dalab.cli import main

raise SystemExit(main())
