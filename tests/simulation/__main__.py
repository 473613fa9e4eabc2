from tests.simulation.schedule import main

main()
