from dccsim.cli import main

raise SystemExit(main())
