from deepseek_operator.frontend.server import main

raise SystemExit(main())
