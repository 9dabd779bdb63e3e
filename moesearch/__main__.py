from moesearch.cli import main

main()
