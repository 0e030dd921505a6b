from rrpd.cli import main

main()
