from deepseek_operator.download.cli import main

raise SystemExit(main())
