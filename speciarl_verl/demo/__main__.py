from speciarl_verl.demo.tour import main

raise SystemExit(main())
