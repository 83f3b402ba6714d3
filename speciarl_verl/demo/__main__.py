from speciarl_verl.demo.reward_tour import main

raise SystemExit(main())
