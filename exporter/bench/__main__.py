from exporter.bench.runner import main

raise SystemExit(main())
