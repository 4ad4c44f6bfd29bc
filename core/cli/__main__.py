from simplug.cli.commands import main

main()
