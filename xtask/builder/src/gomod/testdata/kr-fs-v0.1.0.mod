module "github.com/kr/fs"
