import { postgresAvailable } from "../../support/postgres.ts";
import { redisAvailable } from "../../support/redis.ts";
import { simulationSlice } from "./slice.ts";

simulationSlice("postgres+redis", postgresAvailable && redisAvailable);
