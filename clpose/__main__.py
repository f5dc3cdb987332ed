from clpose.cli.app import main

main()
