exec ./main "$@"
