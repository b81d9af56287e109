import { postgresAvailable } from "../../support/postgres.ts";
import { simulationSlice } from "./slice.ts";

simulationSlice("postgres", postgresAvailable);
