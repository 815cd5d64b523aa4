from meterworks.cli import main

main()
