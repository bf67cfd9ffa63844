from deepseek_operator.preflight.cli import main

raise SystemExit(main())
