from cpe_simulator.cli import main

main()
