from sleepdetect.cli import main

raise SystemExit(main())
