from warmgate.core.cli import main

main()
