// Express 4, installed beside Express 5 under another name for the adapter suite: its API is typed as 5's.
declare module "express-v4" {
  export { default } from "express";
}
