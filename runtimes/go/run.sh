./main "$@"
