from comfyctl.cli import main

raise SystemExit(main())
